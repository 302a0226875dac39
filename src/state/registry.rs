//! The session registry: which node each recently seen session is on (DESIGN.md "Session
//! registry"). It gives live-session counts per node, drain completion and metrics; routing
//! never reads it, so losing it loses only statistics.
//!
//! # Shape
//!
//! A [`DashMap`] from the xxh3 hash of the **backend-facing** session id (`u64`, pre-hashed, so
//! the map's own hasher is the identity) to an [`Entry`] of 8 bytes: the node's slot (a `u32`
//! naming one `(pool, route)`, see [`Registry::slot`]) and the last time the session was seen, in
//! whole seconds since the registry started (`u32`). One tracked session costs the 16-byte
//! bucket plus hashbrown's control byte, divided by the table's load (7/8 at most, 7/16 right
//! after a resize): 19 to 39 bytes; `benches/registry.rs` measures it.
//!
//! # Learning
//!
//! [`Registry::learn`] runs once per proxied response: the id the request carried, the id that
//! was forwarded after rebinding, and the ids the response issued through `Set-Cookie`. A
//! session that moved (failover) moves its entry; a renamed one (`rename` binder, Tomcat's
//! `JvmRouteBinderValve`, `changeSessionId` after login) drops the old entry.
//!
//! # Bounds
//!
//! `registry.max_sessions` bounds the map. When it is full, **new sessions are not tracked**
//! (counted in `stickyroute_registry_rejected_total`) until the sweeper expires old ones;
//! known sessions keep being updated. Refusing is O(1) and never drops a session that is
//! still in use, where evicting an arbitrary entry would. Entries unseen for
//! `session.idle_timeout` are removed by the sweeper (`control::sweeper`), which also logs drain completion and
//! ticks the one-second clock the request path reads (an entry may expire a second early).
//!
//! Per-instance state: with several balancers, each one counts the sessions it has seen.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use dashmap::mapref::entry::Entry as MapEntry;
use dashmap::DashMap;
use tokio::time::Instant;

use crate::core::node_state::NodeState;

/// The key of a session id in the registry.
pub fn session_hash(backend_id: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(backend_id.as_bytes())
}

/// One tracked session: 8 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// [`Registry::slot`] of the node the session was last seen on.
    pub node: u32,
    /// Seconds since the registry started.
    pub seen: u32,
}

/// The hasher of the registry's two maps, one rule per key type: a session's key (`u64`) is
/// already an xxh3 hash and passes through; a node's slot number (a small `u32`) is spread by
/// one multiplication (Fibonacci hashing: its bits reach the high bits, which pick the map's
/// shard and control bytes). The per-node map is read on every new session, and SipHash cost
/// more than the rest of the update.
#[derive(Default, Clone, Copy)]
pub struct KeyHash(u64);

impl Hasher for KeyHash {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only the two integer writes are used; fold anything else in.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type SessionMap = DashMap<u64, Entry, BuildHasherDefault<KeyHash>>;

/// Per-node numbers kept by the registry.
#[derive(Debug, Default)]
struct NodeSessions {
    live: AtomicI64,
    /// The "drained" event was logged and not re-armed since.
    drained_reported: AtomicBool,
}

/// The bounded session registry of one balancer.
#[derive(Debug)]
pub struct Registry {
    sessions: SessionMap,
    len: AtomicUsize,
    max: AtomicUsize,
    idle_s: AtomicU32,
    nodes: DashMap<u32, NodeSessions, BuildHasherDefault<KeyHash>>,
    rejected: AtomicU64,
    expired: AtomicU64,
    start: Instant,
    /// [`Registry::now`] as of the last [`Registry::tick`]: the request path reads this
    /// instead of the system clock (a clock read costs more than the map update here).
    clock: AtomicU32,
    /// [`Registry::begin_drain_pass`] ran once (the first pass records, it does not report).
    reported_once: AtomicBool,
    /// Slot numbers by `(pool, route)`: see [`Registry::slot`].
    slots: Mutex<HashMap<(String, String), u32>>,
}

/// Registry counters for metrics and the status API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistryStats {
    pub sessions: usize,
    pub max_sessions: usize,
    /// New sessions not tracked because the registry was full.
    pub rejected: u64,
    /// Sessions forgotten after `idle_timeout`.
    pub expired: u64,
}

impl Registry {
    pub fn new(max_sessions: usize, idle_timeout: Duration) -> Registry {
        Registry {
            sessions: SessionMap::default(),
            len: AtomicUsize::new(0),
            max: AtomicUsize::new(max_sessions),
            idle_s: AtomicU32::new(idle_secs(idle_timeout)),
            nodes: DashMap::default(),
            rejected: AtomicU64::new(0),
            expired: AtomicU64::new(0),
            start: Instant::now(),
            clock: AtomicU32::new(0),
            reported_once: AtomicBool::new(false),
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// The slot of one `(pool, route)`: a small number, stable for the life of the registry,
    /// so an entry survives reloads that keep the node and follows a node whose address
    /// changed. Called when a snapshot is built, never on the request path.
    pub fn slot(&self, pool: &str, route: &str) -> u32 {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let next = slots.len() as u32;
        *slots
            .entry((pool.to_string(), route.to_string()))
            .or_insert(next)
    }

    /// Applies new limits (a reload). A lower bound takes effect as sessions expire.
    pub fn set_limits(&self, max_sessions: usize, idle_timeout: Duration) {
        self.max.store(max_sessions, Ordering::Relaxed);
        self.idle_s
            .store(idle_secs(idle_timeout), Ordering::Relaxed);
    }

    /// Seconds since the registry started: the clock of [`Entry::seen`].
    pub fn now(&self) -> u32 {
        self.start.elapsed().as_secs().min(u64::from(u32::MAX)) as u32
    }

    /// Advances the coarse clock the request path uses (the sweeper calls it every second).
    pub fn tick(&self) {
        self.clock.store(self.now(), Ordering::Relaxed);
    }

    /// What one proxied response teaches: `carried` is the backend-facing id of the request,
    /// `forwarded` the id sent to `node` after rebinding, `issued` the backend-facing ids the
    /// response set. Cheap when nothing changes: one hash and one map update.
    pub fn learn<'a>(
        &self,
        node: u32,
        carried: Option<&str>,
        forwarded: Option<&str>,
        issued: impl IntoIterator<Item = &'a str>,
    ) {
        let now = self.clock.load(Ordering::Relaxed);
        let mut replaced = false;
        for id in issued {
            if Some(id) == forwarded {
                continue;
            }
            // A new session, or the old one under a new id: track the new id.
            self.touch_at(session_hash(id), node, now);
            replaced = true;
        }
        match forwarded {
            Some(f) if replaced => self.forget(session_hash(f)),
            Some(f) => self.touch_at(session_hash(f), node, now),
            None => {}
        }
        if let (Some(c), Some(f)) = (carried, forwarded) {
            if c != f {
                self.forget(session_hash(c)); // renamed before forwarding (`rename` binder)
            }
        }
    }

    /// Records that session `hash` was seen on `node` at `now` (seconds, [`Registry::now`]).
    pub fn touch_at(&self, hash: u64, node: u32, now: u32) {
        match self.sessions.entry(hash) {
            MapEntry::Occupied(mut o) => {
                let e = o.get_mut();
                e.seen = now;
                if e.node != node {
                    let old = std::mem::replace(&mut e.node, node);
                    drop(o);
                    self.add_live(old, -1);
                    self.add_live(node, 1);
                }
            }
            MapEntry::Vacant(v) => {
                if self.len.load(Ordering::Relaxed) >= self.max.load(Ordering::Relaxed) {
                    drop(v);
                    self.rejected.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                v.insert(Entry { node, seen: now });
                self.len.fetch_add(1, Ordering::Relaxed);
                self.add_live(node, 1);
            }
        }
    }

    /// Forgets one session.
    pub fn forget(&self, hash: u64) {
        if let Some((_, e)) = self.sessions.remove(&hash) {
            self.len.fetch_sub(1, Ordering::Relaxed);
            self.add_live(e.node, -1);
        }
    }

    /// The entry of one session.
    pub fn get(&self, hash: u64) -> Option<Entry> {
        self.sessions.get(&hash).map(|e| *e)
    }

    fn add_live(&self, node: u32, delta: i64) {
        if let Some(n) = self.nodes.get(&node) {
            n.live.fetch_add(delta, Ordering::Relaxed);
            return;
        }
        self.nodes
            .entry(node)
            .or_default()
            .live
            .fetch_add(delta, Ordering::Relaxed);
    }

    /// Sessions the map has room for without growing (its tables' capacity).
    pub fn capacity(&self) -> usize {
        self.sessions.capacity()
    }

    /// Sessions seen on the node of `slot` within the idle timeout (up to one sweep late).
    pub fn live_sessions(&self, slot: u32) -> u64 {
        self.nodes
            .get(&slot)
            .map_or(0, |n| n.live.load(Ordering::Relaxed).max(0) as u64)
    }

    pub fn stats(&self) -> RegistryStats {
        RegistryStats {
            sessions: self.len.load(Ordering::Relaxed),
            max_sessions: self.max.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            expired: self.expired.load(Ordering::Relaxed),
        }
    }

    /// Removes sessions unseen since `now - idle_timeout`; returns how many.
    pub fn sweep_at(&self, now: u32) -> usize {
        let idle = self.idle_s.load(Ordering::Relaxed);
        let Some(cutoff) = now.checked_sub(idle) else {
            return 0;
        };
        let mut removed: HashMap<u32, i64> = HashMap::new();
        self.sessions.retain(|_, e| {
            if e.seen < cutoff {
                *removed.entry(e.node).or_default() += 1;
                false
            } else {
                true
            }
        });
        let total: i64 = removed.values().sum();
        for (node, n) in removed {
            self.add_live(node, -n);
        }
        if total > 0 {
            self.len.fetch_sub(total as usize, Ordering::Relaxed);
            self.expired.fetch_add(total as u64, Ordering::Relaxed);
            let len = self.len.load(Ordering::Relaxed);
            // Give memory back after a large expiry (a burst of one-request sessions).
            if self.sessions.capacity() > 4 * len.max(1024) {
                self.sessions.shrink_to_fit();
            }
        }
        total as usize
    }

    /// Is this node drained: out of rotation (`draining` or `disabled`) with no live session?
    pub fn is_drained(&self, state: NodeState, slot: u32) -> bool {
        matches!(state, NodeState::Draining | NodeState::Disabled) && self.live_sessions(slot) == 0
    }

    /// Starts a pass of drain reports over every node (see [`Registry::record_drained`]);
    /// true for the first pass, whose findings are recorded but not reported: nodes already
    /// drained at startup (disabled in the file) are no news.
    pub fn begin_drain_pass(&self) -> bool {
        !self.reported_once.swap(true, Ordering::Relaxed)
    }

    /// Records whether the node of `slot` is drained now (the verdict is the caller's:
    /// [`Registry::is_drained`] for this instance, or the group's in a cluster); true when it
    /// became drained since the last record, the moment to report it once.
    pub fn record_drained(&self, slot: u32, drained: bool) -> bool {
        let node = self.nodes.entry(slot).or_default();
        let was = node.drained_reported.swap(drained, Ordering::Relaxed);
        drained && !was
    }
}

fn idle_secs(d: Duration) -> u32 {
    d.as_secs().clamp(1, u64::from(u32::MAX)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(max: usize) -> Registry {
        Registry::new(max, Duration::from_secs(60))
    }

    #[test]
    fn new_session_from_set_cookie_then_hits() {
        let r = reg(10);
        r.learn(1, None, None, ["A.jvm1"]);
        assert_eq!(r.live_sessions(1), 1);
        r.learn(1, Some("A.jvm1"), Some("A.jvm1"), []);
        r.learn(1, Some("A.jvm1"), Some("A.jvm1"), []);
        assert_eq!(r.live_sessions(1), 1);
        assert_eq!(r.stats().sessions, 1);
    }

    /// (carried, forwarded, issued, node) of one response.
    type Step = (
        Option<&'static str>,
        Option<&'static str>,
        &'static [&'static str],
        u32,
    );

    #[test]
    fn learning_table() {
        // (carried, forwarded, issued, node) steps and the expected (node -> live) afterwards.
        struct Case {
            name: &'static str,
            steps: &'static [Step],
            live: &'static [(u32, u64)],
            sessions: usize,
        }
        let cases = [
            Case {
                name: "translate failover moves the entry (backend id unchanged, client id X.jvm1.jvm2)",
                steps: &[(None, None, &["X.jvm1"], 1), (Some("X.jvm1"), Some("X.jvm1"), &[], 2)],
                live: &[(1, 0), (2, 1)],
                sessions: 1,
            },
            Case {
                name: "rename binder: X.jvm1 forwarded as X.jvm2, old entry dropped",
                steps: &[(None, None, &["X.jvm1"], 1), (Some("X.jvm1"), Some("X.jvm2"), &["X.jvm2"], 2)],
                live: &[(1, 0), (2, 1)],
                sessions: 1,
            },
            Case {
                name: "backend binder: the valve issues X.jvm2 for X.jvm1",
                steps: &[(None, None, &["X.jvm1"], 1), (Some("X.jvm1"), Some("X.jvm1"), &["X.jvm2"], 2)],
                live: &[(1, 0), (2, 1)],
                sessions: 1,
            },
            Case {
                name: "changeSessionId after login on the same node",
                steps: &[(None, None, &["X.jvm1"], 1), (Some("X.jvm1"), Some("X.jvm1"), &["Y.jvm1"], 1)],
                live: &[(1, 1)],
                sessions: 1,
            },
            Case {
                name: "a re-issued cookie with the same id is a hit",
                steps: &[(None, None, &["X.jvm1"], 1), (Some("X.jvm1"), Some("X.jvm1"), &["X.jvm1"], 1)],
                live: &[(1, 1)],
                sessions: 1,
            },
            Case {
                name: "a request without session and without Set-Cookie tracks nothing",
                steps: &[(None, None, &[], 1)],
                live: &[(1, 0)],
                sessions: 0,
            },
        ];
        for c in cases {
            let r = reg(100);
            for (carried, forwarded, issued, node) in c.steps {
                r.learn(*node, *carried, *forwarded, issued.iter().copied());
            }
            for (node, want) in c.live {
                assert_eq!(r.live_sessions(*node), *want, "{}: node {node}", c.name);
            }
            assert_eq!(r.stats().sessions, c.sessions, "{}", c.name);
        }
    }

    #[test]
    fn full_registry_refuses_new_sessions_but_updates_known_ones() {
        let r = reg(2);
        r.touch_at(1, 7, 0);
        r.touch_at(2, 7, 0);
        r.touch_at(3, 7, 0);
        assert_eq!(r.stats().sessions, 2);
        assert_eq!(r.stats().rejected, 1);
        r.touch_at(1, 8, 1); // a known session still moves
        assert_eq!((r.live_sessions(7), r.live_sessions(8)), (1, 1));
        assert!(r.get(3).is_none());
    }

    #[test]
    fn sweep_expires_idle_sessions_and_their_counts() {
        let r = Registry::new(100, Duration::from_secs(10));
        r.touch_at(1, 5, 0);
        r.touch_at(2, 5, 8);
        r.touch_at(3, 6, 9);
        assert_eq!(r.sweep_at(5), 0, "nothing is older than 10 s yet");
        assert_eq!(r.sweep_at(11), 1);
        assert_eq!(r.live_sessions(5), 1);
        assert_eq!(r.sweep_at(30), 2);
        assert_eq!((r.live_sessions(5), r.live_sessions(6)), (0, 0));
        let s = r.stats();
        assert_eq!((s.sessions, s.expired), (0, 3));
    }

    #[test]
    fn drained_needs_an_out_of_rotation_state_and_zero_sessions() {
        let r = reg(10);
        r.touch_at(1, 3, 0);
        assert!(!r.is_drained(NodeState::Draining, 3));
        assert!(!r.is_drained(NodeState::Active, 4));
        assert!(r.is_drained(NodeState::Draining, 4));
        assert!(r.is_drained(NodeState::Disabled, 4));
        r.touch_at(1, 4, 1);
        assert!(r.is_drained(NodeState::Disabled, 3));
    }

    #[test]
    fn drain_is_reported_once_per_drain_and_not_on_the_first_pass() {
        let r = reg(10);
        assert!(r.begin_drain_pass());
        assert!(r.record_drained(1, true), "recorded on the first pass");
        assert!(!r.begin_drain_pass());
        assert!(!r.record_drained(1, true), "still drained: no news");
        assert!(!r.record_drained(1, false));
        assert!(
            r.record_drained(1, true),
            "drained again after being re-armed"
        );
        assert!(!r.record_drained(2, false));
    }

    #[test]
    fn node_slots_are_stable_per_pool_and_route() {
        let r = reg(10);
        let a = r.slot("pool-x", "jvm1");
        assert_eq!(r.slot("pool-x", "jvm1"), a);
        assert_ne!(r.slot("pool-y", "jvm1"), a);
        assert_ne!(r.slot("pool-x", "jvm2"), a);
    }

    #[test]
    fn entry_is_eight_bytes() {
        assert_eq!(std::mem::size_of::<Entry>(), 8);
        assert_eq!(std::mem::size_of::<(u64, Entry)>(), 16);
    }
}
