//! Node selection: DESIGN.md "One request, end to end", step 4.
//!
//! [`choose`] returns a [`Choice`] whose [`Outcome`] says what happened (sticky hit, new
//! session, failover); the proxy drives cookie rewriting, counters and the access log from it.
//! Failover uses weighted rendezvous hashing of the backend-facing id, so every concurrent
//! request of one session, and every balancer process with the same config, picks the same node
//! without sharing state. New sessions use power-of-two-choices on in-flight requests (or
//! weighted round robin). Selection never allocates.

use rand::Rng;
use xxhash_rust::xxh3::xxh3_64_with_seed;

use super::node_state::NodeState;

/// How new sessions are spread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BalanceKind {
    /// Power of two choices on in-flight requests, weighted.
    P2c,
    /// Weighted round robin.
    RoundRobin,
}

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

/// What selection needs to know about a pool: a read-only view, so that the policy here stays
/// pure and the state layer decides how it stores nodes (atomics, snapshots).
pub trait PoolView {
    /// Number of nodes; node indexes are `0..len()`.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Index of the node with this route.
    fn index_of(&self, route: &str) -> Option<usize>;
    fn state(&self, node: usize) -> NodeState;
    fn is_up(&self, node: usize, now_ms: u64) -> bool;
    fn weight(&self, node: usize) -> u32;
    fn domain(&self, node: usize) -> &str;
    /// The node's preferred failover target.
    fn redirect(&self, node: usize) -> Option<usize>;
    fn inflight(&self, node: usize) -> u64;
    /// Could a new request start on the node now, or is it at its connection limit?
    fn has_room(&self, node: usize) -> bool {
        let _ = node;
        true
    }
    /// Seed for rendezvous hashing, derived from the route so every balancer agrees.
    fn route_seed(&self, node: usize) -> u64;
    fn balance(&self) -> BalanceKind;
    fn cross_domain(&self) -> bool;
    /// The next round-robin ticket.
    fn next_ticket(&self) -> u64;
}

/// Selects the node for a request. `tried` lists nodes that already failed this request.
pub fn choose<P: PoolView>(
    pool: &P,
    session: Option<SessionKey<'_>>,
    tried: &[usize],
    now_ms: u64,
) -> Result<Choice, NoCandidate> {
    let Some(session) = session else {
        return choose_new(pool, tried, now_ms);
    };
    let Some(pinned) = pool.index_of(session.pin) else {
        // A removed node or a foreign id: failover over the whole pool.
        return failover(pool, None, None, session.backend_id, tried, now_ms);
    };
    let serves_pinned = matches!(
        pool.state(pinned),
        NodeState::Active | NodeState::Draining | NodeState::Standby
    );
    if serves_pinned && pool.is_up(pinned, now_ms) && !tried.contains(&pinned) {
        return Ok(Choice {
            node: pinned,
            outcome: Outcome::Hit,
            from: None,
        });
    }
    failover(
        pool,
        Some(pinned),
        Some(pool.domain(pinned)),
        session.backend_id,
        tried,
        now_ms,
    )
}

/// Candidates of a failover or a new session: up, not tried, not the pinned node, in `domain`
/// when given, in `state`.
fn candidates<'p, P: PoolView>(
    pool: &'p P,
    exclude: Option<usize>,
    domain: Option<&'p str>,
    state: NodeState,
    tried: &'p [usize],
    now_ms: u64,
) -> impl Iterator<Item = usize> + Clone + 'p {
    (0..pool.len()).filter(move |&i| {
        Some(i) != exclude
            && !tried.contains(&i)
            && pool.state(i) == state
            && domain.is_none_or(|d| pool.domain(i) == d)
            && pool.is_up(i, now_ms)
    })
}

fn failover<P: PoolView>(
    pool: &P,
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
    let scope_count = if domain.is_none() || pool.cross_domain() {
        4
    } else {
        2
    };
    if domain.is_none() {
        scopes[0] = (None, NodeState::Active);
        scopes[1] = (None, NodeState::Standby);
    }
    let redirect = pinned.and_then(|p| pool.redirect(p));
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
    Err(if domain.is_some() && !pool.cross_domain() {
        NoCandidate::DomainDown
    } else {
        NoCandidate::PoolDown
    })
}

/// Weighted rendezvous (highest random weight) hashing: score = weight / -ln(u), with u a
/// uniform value in (0, 1) derived from hash(key, route). The same key and node set give the
/// same node everywhere; removing a node moves only the keys it held.
pub fn rendezvous<P: PoolView>(
    pool: &P,
    key: &str,
    cands: impl Iterator<Item = usize>,
) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for i in cands {
        let h = xxh3_64_with_seed(key.as_bytes(), pool.route_seed(i));
        let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        let score = f64::from(pool.weight(i)) / -u.ln();
        if best.is_none_or(|(_, s)| score > s) {
            best = Some((i, score));
        }
    }
    best.map(|(i, _)| i)
}

/// A new session goes to a node with room when there is one: one at its connection limit
/// would make it wait while another node could serve it at once. Only when every candidate is
/// full does it queue at one of them.
fn choose_new<P: PoolView>(pool: &P, tried: &[usize], now_ms: u64) -> Result<Choice, NoCandidate> {
    for state in [NodeState::Active, NodeState::Standby] {
        let cands = candidates(pool, None, None, state, tried, now_ms);
        let with_room = cands.clone().filter(|&i| pool.has_room(i));
        let picked = match pool.balance() {
            BalanceKind::P2c => p2c(pool, with_room).or_else(|| p2c(pool, cands)),
            BalanceKind::RoundRobin => {
                let ticket = pool.next_ticket();
                weighted_pick(pool, with_room, ticket)
                    .or_else(|| weighted_pick(pool, cands, ticket))
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
fn weighted_pick<P: PoolView>(
    pool: &P,
    cands: impl Iterator<Item = usize> + Clone,
    ticket: u64,
) -> Option<usize> {
    let total: u64 = cands.clone().map(|i| u64::from(pool.weight(i))).sum();
    if total == 0 {
        return None;
    }
    let mut t = ticket % total;
    for i in cands {
        let w = u64::from(pool.weight(i));
        if t < w {
            return Some(i);
        }
        t -= w;
    }
    None
}

/// Power of two choices: two weighted-random candidates, the one with fewer in-flight requests
/// per unit of weight wins (ties go to the first draw, which keeps the weighted spread). Both
/// draws are found in one pass over the candidates, after one pass for the total weight.
fn p2c<P: PoolView>(pool: &P, cands: impl Iterator<Item = usize> + Clone) -> Option<usize> {
    let total: u64 = cands.clone().map(|i| u64::from(pool.weight(i))).sum();
    if total == 0 {
        return None;
    }
    let mut rng = rand::rng();
    let (ta, tb) = (rng.random::<u64>() % total, rng.random::<u64>() % total);
    let (mut a, mut b) = (None, None);
    let mut start = 0u64;
    for i in cands {
        let end = start + u64::from(pool.weight(i));
        if a.is_none() && ta < end {
            a = Some(i);
        }
        if b.is_none() && tb < end {
            b = Some(i);
        }
        if a.is_some() && b.is_some() {
            break;
        }
        start = end;
    }
    let (a, b) = (a?, b?);
    let load_a = u128::from(pool.inflight(a)) * u128::from(pool.weight(b));
    let load_b = u128::from(pool.inflight(b)) * u128::from(pool.weight(a));
    Some(if load_b < load_a { b } else { a })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three active nodes, up, weight 1; `full` ones are at their connection limit.
    struct Fake {
        full: Vec<bool>,
        balance: BalanceKind,
        ticket: std::cell::Cell<u64>,
    }

    impl PoolView for Fake {
        fn len(&self) -> usize {
            self.full.len()
        }
        fn index_of(&self, route: &str) -> Option<usize> {
            route.parse().ok().filter(|&i| i < self.full.len())
        }
        fn state(&self, _: usize) -> NodeState {
            NodeState::Active
        }
        fn is_up(&self, _: usize, _: u64) -> bool {
            true
        }
        fn weight(&self, _: usize) -> u32 {
            1
        }
        fn domain(&self, _: usize) -> &str {
            ""
        }
        fn redirect(&self, _: usize) -> Option<usize> {
            None
        }
        fn inflight(&self, node: usize) -> u64 {
            // A full node with a small limit can have fewer in flight than one with room.
            if self.full[node] {
                1
            } else {
                50
            }
        }
        fn has_room(&self, node: usize) -> bool {
            !self.full[node]
        }
        fn route_seed(&self, node: usize) -> u64 {
            node as u64 * 7919
        }
        fn balance(&self) -> BalanceKind {
            self.balance
        }
        fn cross_domain(&self) -> bool {
            false
        }
        fn next_ticket(&self) -> u64 {
            let t = self.ticket.get();
            self.ticket.set(t + 1);
            t
        }
    }

    #[test]
    fn new_sessions_go_to_nodes_with_room_and_pinned_ones_stay() {
        for balance in [BalanceKind::P2c, BalanceKind::RoundRobin] {
            // (full nodes, nodes a new session may land on)
            let cases: [(&[bool], &[usize]); 3] = [
                (&[true, false, true], &[1]),
                (&[false, true, false], &[0, 2]),
                // Every node full: it queues at one of them rather than failing.
                (&[true, true, true], &[0, 1, 2]),
            ];
            for (full, allowed) in cases {
                let pool = Fake {
                    full: full.to_vec(),
                    balance,
                    ticket: Default::default(),
                };
                for _ in 0..50 {
                    let c = choose(&pool, None, &[], 1).unwrap();
                    assert_eq!(c.outcome, Outcome::New);
                    assert!(allowed.contains(&c.node), "{balance:?} {full:?}: {c:?}");
                }
                // A session pinned to a full node stays there (it queues; it is not moved).
                let key = SessionKey {
                    pin: "0",
                    backend_id: "X.0",
                };
                let c = choose(&pool, Some(key), &[], 1).unwrap();
                assert_eq!((c.node, c.outcome), (0, Outcome::Hit));
            }
        }
    }

    /// Active nodes with these weights and in-flight counts, for the spread of new sessions.
    struct Weighted {
        weights: Vec<u32>,
        inflight: Vec<u64>,
    }

    impl PoolView for Weighted {
        fn len(&self) -> usize {
            self.weights.len()
        }
        fn index_of(&self, _: &str) -> Option<usize> {
            None
        }
        fn state(&self, _: usize) -> NodeState {
            NodeState::Active
        }
        fn is_up(&self, _: usize, _: u64) -> bool {
            true
        }
        fn weight(&self, node: usize) -> u32 {
            self.weights[node]
        }
        fn domain(&self, _: usize) -> &str {
            ""
        }
        fn redirect(&self, _: usize) -> Option<usize> {
            None
        }
        fn inflight(&self, node: usize) -> u64 {
            self.inflight[node]
        }
        fn route_seed(&self, node: usize) -> u64 {
            node as u64
        }
        fn balance(&self) -> BalanceKind {
            BalanceKind::P2c
        }
        fn cross_domain(&self) -> bool {
            false
        }
        fn next_ticket(&self) -> u64 {
            0
        }
    }

    #[test]
    fn p2c_spreads_by_weight_and_prefers_the_less_loaded() {
        // (weights, in flight, share of 10,000 new sessions each node gets: [min, max])
        type Case<'a> = (&'a [u32], &'a [u64], &'a [(f64, f64)]);
        let cases: [Case; 4] = [
            // Equal load: ties go to the first draw, so the spread follows the weights.
            (&[1, 3], &[0, 0], &[(0.22, 0.28), (0.72, 0.78)]),
            (
                &[1, 1, 1],
                &[5, 5, 5],
                &[(0.30, 0.37), (0.30, 0.37), (0.30, 0.37)],
            ),
            // A node with weight 0 gets nothing.
            (&[0, 1], &[0, 0], &[(0.0, 0.0), (1.0, 1.0)]),
            // The busier node loses every draw it shares with the other: it wins only when
            // both draws pick it, a quarter of the time.
            (&[1, 1], &[10, 0], &[(0.22, 0.28), (0.72, 0.78)]),
        ];
        for (weights, inflight, shares) in cases {
            let pool = Weighted {
                weights: weights.to_vec(),
                inflight: inflight.to_vec(),
            };
            let mut got = vec![0u32; weights.len()];
            for _ in 0..10_000 {
                got[choose(&pool, None, &[], 1).unwrap().node] += 1;
            }
            for (i, &(lo, hi)) in shares.iter().enumerate() {
                let share = f64::from(got[i]) / 10_000.0;
                assert!(
                    lo <= share && share <= hi,
                    "{weights:?} {inflight:?}: {got:?}"
                );
            }
        }
        let none = Weighted {
            weights: vec![0, 0],
            inflight: vec![0, 0],
        };
        assert_eq!(choose(&none, None, &[], 1), Err(NoCandidate::PoolDown));
    }
}
