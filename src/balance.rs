//! Node selection: DESIGN.md "One request, end to end", step 4.
//!
//! [`choose`] returns a [`Choice`] whose [`Outcome`] says what happened (sticky hit, new
//! session, failover); the proxy drives cookie rewriting, counters and the access log from it.
//! Failover uses weighted rendezvous hashing of the backend-facing id, so every concurrent
//! request of one session, and every balancer process with the same config, picks the same node
//! without sharing state. New sessions use power-of-two-choices on in-flight requests (or
//! weighted round robin). Selection never allocates.

use std::sync::atomic::Ordering;

use rand::Rng;
use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::backends::{NodeState, Pool};
use crate::config::BalanceKind;

/// What the selection did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The pinned node serves the session.
    Hit,
    /// No session (or one without a route): a node was picked for a new session.
    New,
    /// The pinned node is down, disabled or unknown: the session moves.
    Failover,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::New => "new",
            Outcome::Failover => "failover",
        }
    }
}

/// The selected node (an index into `pool.nodes`) and how it was selected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice {
    pub node: usize,
    pub outcome: Outcome,
    /// For a failover: the node the session was pinned to (when it is a node of the pool).
    pub from: Option<usize>,
}

/// No node can take the request; the reason is shown to the client with `503`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NoCandidate {
    #[error("no node of the session's domain is up")]
    DomainDown,
    #[error("no node of the pool is up")]
    PoolDown,
}

/// The session as selection sees it.
#[derive(Debug, Clone, Copy)]
pub struct SessionKey<'a> {
    /// The pin route (text after the last separator of the client-facing id).
    pub pin: &'a str,
    /// The backend-facing id: the rendezvous key.
    pub backend_id: &'a str,
}

/// Selects the node for a request. `tried` lists nodes that already failed this request.
pub fn choose(
    pool: &Pool,
    session: Option<SessionKey<'_>>,
    tried: &[usize],
    now_ms: u64,
) -> Result<Choice, NoCandidate> {
    let Some(session) = session else {
        return choose_new(pool, tried, now_ms);
    };
    let Some(pinned) = pool.node_index(session.pin) else {
        // A removed node or a foreign id: failover over the whole pool.
        return failover(pool, None, None, session.backend_id, tried, now_ms);
    };
    let node = &pool.nodes[pinned];
    let serves_pinned = matches!(
        node.state(),
        NodeState::Active | NodeState::Draining | NodeState::Standby
    );
    if serves_pinned && node.is_up(now_ms) && !tried.contains(&pinned) {
        return Ok(Choice {
            node: pinned,
            outcome: Outcome::Hit,
            from: None,
        });
    }
    failover(
        pool,
        Some(pinned),
        Some(node.domain.as_str()),
        session.backend_id,
        tried,
        now_ms,
    )
}

/// Candidates of a failover or a new session: up, not tried, not the pinned node, in `domain`
/// when given, in `state`.
fn candidates<'p>(
    pool: &'p Pool,
    exclude: Option<usize>,
    domain: Option<&'p str>,
    state: NodeState,
    tried: &'p [usize],
    now_ms: u64,
) -> impl Iterator<Item = usize> + Clone + 'p {
    pool.nodes.iter().enumerate().filter_map(move |(i, n)| {
        let ok = Some(i) != exclude
            && !tried.contains(&i)
            && n.state() == state
            && domain.is_none_or(|d| n.domain == d)
            && n.is_up(now_ms);
        ok.then_some(i)
    })
}

fn failover(
    pool: &Pool,
    pinned: Option<usize>,
    domain: Option<&str>,
    key: &str,
    tried: &[usize],
    now_ms: u64,
) -> Result<Choice, NoCandidate> {
    let mut scopes: [(Option<&str>, NodeState); 4] = [
        (domain, NodeState::Active),
        (domain, NodeState::Standby),
        (None, NodeState::Active),
        (None, NodeState::Standby),
    ];
    let scope_count = if domain.is_none() || pool.cfg.failover.cross_domain {
        4
    } else {
        2
    };
    if domain.is_none() {
        scopes[0] = (None, NodeState::Active);
        scopes[1] = (None, NodeState::Standby);
    }
    let redirect = pinned.and_then(|p| pool.nodes[p].redirect);
    for (scope_domain, state) in &scopes[..scope_count] {
        let cands = candidates(pool, pinned, *scope_domain, *state, tried, now_ms);
        if let Some(r) = redirect {
            if cands.clone().any(|c| c == r) {
                return Ok(Choice {
                    node: r,
                    outcome: Outcome::Failover,
                    from: pinned,
                });
            }
        }
        if let Some(node) = rendezvous(pool, key, cands) {
            return Ok(Choice {
                node,
                outcome: Outcome::Failover,
                from: pinned,
            });
        }
    }
    Err(if domain.is_some() && !pool.cfg.failover.cross_domain {
        NoCandidate::DomainDown
    } else {
        NoCandidate::PoolDown
    })
}

/// Weighted rendezvous (highest random weight) hashing: score = weight / -ln(u), with u a
/// uniform value in (0, 1) derived from hash(key, route). The same key and node set give the
/// same node everywhere; removing a node moves only the keys it held.
pub fn rendezvous(pool: &Pool, key: &str, cands: impl Iterator<Item = usize>) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for i in cands {
        let node = &pool.nodes[i];
        let h = xxh3_64_with_seed(key.as_bytes(), node.route_seed);
        let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        let score = f64::from(node.weight) / -u.ln();
        if best.is_none_or(|(_, s)| score > s) {
            best = Some((i, score));
        }
    }
    best.map(|(i, _)| i)
}

fn choose_new(pool: &Pool, tried: &[usize], now_ms: u64) -> Result<Choice, NoCandidate> {
    for state in [NodeState::Active, NodeState::Standby] {
        let cands = candidates(pool, None, None, state, tried, now_ms);
        let picked = match pool.cfg.balance {
            BalanceKind::P2c => p2c(pool, cands),
            BalanceKind::RoundRobin => {
                let n = pool.rt.rr.fetch_add(1, Ordering::Relaxed);
                weighted_pick(pool, cands, n as u64)
            }
        };
        if let Some(node) = picked {
            return Ok(Choice {
                node,
                outcome: Outcome::New,
                from: None,
            });
        }
    }
    Err(NoCandidate::PoolDown)
}

/// The candidate at position `ticket` (mod total weight) of the weighted sequence.
fn weighted_pick(
    pool: &Pool,
    cands: impl Iterator<Item = usize> + Clone,
    ticket: u64,
) -> Option<usize> {
    let total: u64 = cands.clone().map(|i| u64::from(pool.nodes[i].weight)).sum();
    if total == 0 {
        return None;
    }
    let mut t = ticket % total;
    for i in cands {
        let w = u64::from(pool.nodes[i].weight);
        if t < w {
            return Some(i);
        }
        t -= w;
    }
    None
}

/// Power of two choices: two weighted-random candidates, the one with fewer in-flight requests
/// per unit of weight wins (ties go to the first draw, which keeps the weighted spread).
fn p2c(pool: &Pool, cands: impl Iterator<Item = usize> + Clone) -> Option<usize> {
    let mut rng = rand::rng();
    let a = weighted_pick(pool, cands.clone(), rng.random())?;
    let b = weighted_pick(pool, cands, rng.random())?;
    let (na, nb) = (&pool.nodes[a], &pool.nodes[b]);
    let load_a = u128::from(na.inflight()) * u128::from(nb.weight);
    let load_b = u128::from(nb.inflight()) * u128::from(na.weight);
    Some(if load_b < load_a { b } else { a })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backends::Snapshot;
    use crate::config::Config;
    use std::sync::Arc;
    use std::time::Duration;

    fn pool(yaml_nodes: &str, failover: &str) -> Snapshot {
        let yaml = format!(
            "listeners: [{{ bind: \"127.0.0.1:1\" }}]\npools:\n  - name: app\n    failover: {failover}\n    nodes:\n{yaml_nodes}"
        );
        let c = Config::from_yaml(&yaml, "t.yaml").unwrap();
        Snapshot::build(Arc::new(c), None).unwrap()
    }

    const NODES: &str =
        "      - { route: jvm1, address: \"127.0.0.1:11\", domain: a, redirect: jvm3 }
      - { route: jvm2, address: \"127.0.0.1:12\", domain: a }
      - { route: jvm3, address: \"127.0.0.1:13\", domain: a }
      - { route: jvm4, address: \"127.0.0.1:14\", domain: b }
      - { route: jvm5, address: \"127.0.0.1:15\", domain: a, state: standby }
";

    fn key<'a>(pin: &'a str, id: &'a str) -> Option<SessionKey<'a>> {
        Some(SessionKey {
            pin,
            backend_id: id,
        })
    }

    fn down(s: &Snapshot, route: &str) {
        s.pools[0].node(route).unwrap().rt.health.mark_down(
            crate::backends::now_ms(),
            Duration::from_secs(60),
            "test".into(),
        );
    }

    fn routes(
        s: &Snapshot,
        c: Result<Choice, NoCandidate>,
    ) -> Result<(&str, Outcome), NoCandidate> {
        c.map(|c| (s.pools[0].nodes[c.node].route.as_str(), c.outcome))
    }

    #[test]
    fn sticky_and_failover_table() {
        // (down nodes, disabled nodes, pin, expected route or error, outcome)
        type Case = (
            &'static [&'static str],
            &'static [&'static str],
            &'static str,
            Result<(&'static str, Outcome), NoCandidate>,
        );
        let cases: &[Case] = &[
            (&[], &[], "jvm2", Ok(("jvm2", Outcome::Hit))),
            (&[], &[], "jvm5", Ok(("jvm5", Outcome::Hit))), // a pinned standby node keeps its session
            (&["jvm1"], &[], "jvm1", Ok(("jvm3", Outcome::Failover))), // redirect honoured
            (&[], &["jvm1"], "jvm1", Ok(("jvm3", Outcome::Failover))),
            (
                &["jvm1", "jvm3"],
                &[],
                "jvm1",
                Ok(("jvm2", Outcome::Failover)),
            ), // redirect down
            (
                &["jvm1", "jvm2", "jvm3"],
                &[],
                "jvm1",
                Ok(("jvm5", Outcome::Failover)),
            ), // standby
            (
                &["jvm1", "jvm2", "jvm3", "jvm5"],
                &[],
                "jvm1",
                Err(NoCandidate::DomainDown),
            ),
            (&["jvm4"], &[], "jvm4", Err(NoCandidate::DomainDown)),
        ];
        for (downs, disabled, pin, want) in cases {
            let s = pool(NODES, "{}");
            for d in *downs {
                down(&s, d);
            }
            for d in *disabled {
                s.pools[0]
                    .node(d)
                    .unwrap()
                    .rt
                    .set_state(NodeState::Disabled);
            }
            let id = format!("ABC.{pin}");
            let got = routes(
                &s,
                choose(&s.pools[0], key(pin, &id), &[], crate::backends::now_ms()),
            );
            assert_eq!(got, *want, "down {downs:?} disabled {disabled:?} pin {pin}");
        }
    }

    #[test]
    fn cross_domain_when_allowed() {
        let s = pool(NODES, "{ cross_domain: true }");
        down(&s, "jvm4");
        let got = routes(
            &s,
            choose(
                &s.pools[0],
                key("jvm4", "X.jvm4"),
                &[],
                crate::backends::now_ms(),
            ),
        );
        let (route, outcome) = got.unwrap();
        assert_eq!(outcome, Outcome::Failover);
        assert_ne!(route, "jvm4");
        assert_ne!(
            route, "jvm5",
            "active nodes of another domain come before standby"
        );
    }

    #[test]
    fn unknown_route_fails_over_over_whole_pool() {
        let s = pool(NODES, "{}");
        let c = choose(
            &s.pools[0],
            key("gone", "X.gone"),
            &[],
            crate::backends::now_ms(),
        )
        .unwrap();
        assert_eq!(c.outcome, Outcome::Failover);
        assert_eq!(c.from, None);
        assert_ne!(s.pools[0].nodes[c.node].state(), NodeState::Standby);
    }

    #[test]
    fn failover_is_deterministic_and_spread() {
        let nodes = "      - { route: jvm1, address: \"127.0.0.1:11\" }
      - { route: jvm2, address: \"127.0.0.1:12\" }
      - { route: jvm3, address: \"127.0.0.1:13\" }
      - { route: jvm4, address: \"127.0.0.1:14\", weight: 2 }
";
        let a = pool(nodes, "{}");
        let b = pool(nodes, "{}");
        down(&a, "jvm1");
        down(&b, "jvm1");
        let mut counts = [0usize; 4];
        for i in 0..4000 {
            let id = format!("{i:032X}.jvm1");
            let ca = choose(
                &a.pools[0],
                key("jvm1", &id),
                &[],
                crate::backends::now_ms(),
            )
            .unwrap();
            let cb = choose(
                &b.pools[0],
                key("jvm1", &id),
                &[],
                crate::backends::now_ms(),
            )
            .unwrap();
            assert_eq!(ca.node, cb.node, "two snapshots disagree on {id}");
            counts[ca.node] += 1;
        }
        assert_eq!(counts[0], 0);
        // weights 1:1:2 over jvm2..jvm4 -> expect 1000/1000/2000, allow 15%
        for (i, want) in [(1, 1000.0), (2, 1000.0), (3, 2000.0)] {
            let got = counts[i] as f64;
            assert!((got - want).abs() / want < 0.15, "{counts:?}");
        }
    }

    #[test]
    fn new_sessions_skip_draining_disabled_standby() {
        let nodes = "      - { route: a, address: \"127.0.0.1:11\" }
      - { route: b, address: \"127.0.0.1:12\", state: draining }
      - { route: c, address: \"127.0.0.1:13\", state: disabled }
      - { route: d, address: \"127.0.0.1:14\", state: standby }
      - { route: e, address: \"127.0.0.1:15\", weight: 3 }
";
        let s = pool(nodes, "{}");
        let mut counts = [0usize; 5];
        for _ in 0..4000 {
            let c = choose(&s.pools[0], None, &[], crate::backends::now_ms()).unwrap();
            assert_eq!(c.outcome, Outcome::New);
            counts[c.node] += 1;
        }
        assert_eq!(&counts[1..4], &[0, 0, 0], "{counts:?}");
        assert!(
            (counts[4] as f64 / counts[0] as f64 - 3.0).abs() < 0.5,
            "{counts:?}"
        );
        // only standby left up -> standby serves
        down(&s, "a");
        down(&s, "e");
        let c = choose(&s.pools[0], None, &[], crate::backends::now_ms()).unwrap();
        assert_eq!(s.pools[0].nodes[c.node].route, "d");
    }

    #[test]
    fn tried_nodes_are_skipped() {
        let s = pool(NODES, "{}");
        let c = choose(
            &s.pools[0],
            key("jvm1", "X.jvm1"),
            &[0],
            crate::backends::now_ms(),
        )
        .unwrap();
        assert_eq!(s.pools[0].nodes[c.node].route, "jvm3");
        let c = choose(
            &s.pools[0],
            key("jvm1", "X.jvm1"),
            &[0, 2],
            crate::backends::now_ms(),
        )
        .unwrap();
        assert_eq!(s.pools[0].nodes[c.node].route, "jvm2");
    }

    #[test]
    fn round_robin_is_weighted() {
        let nodes = "      - { route: a, address: \"127.0.0.1:11\" }
      - { route: b, address: \"127.0.0.1:12\", weight: 2 }
";
        let yaml = format!("listeners: [{{ bind: \"127.0.0.1:1\" }}]\npools:\n  - name: app\n    balance: round_robin\n    nodes:\n{nodes}");
        let c = Config::from_yaml(&yaml, "t.yaml").unwrap();
        let s = Snapshot::build(Arc::new(c), None).unwrap();
        let picks: Vec<usize> = (0..6)
            .map(|_| {
                choose(&s.pools[0], None, &[], crate::backends::now_ms())
                    .unwrap()
                    .node
            })
            .collect();
        assert_eq!(picks, vec![0, 1, 1, 0, 1, 1]);
    }
}
